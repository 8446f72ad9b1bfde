"""Key management: the key store, the ETSI GS QKD 014 server, the peer-KME agreement and the PKI."""
