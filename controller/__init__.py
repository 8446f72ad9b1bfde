"""The host controller of a qkdnode: link, device API, post-processing, key management."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qkd-node")
except PackageNotFoundError:       # running from a source tree that was not installed
    __version__ = "0+unknown"
