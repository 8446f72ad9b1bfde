"""The HIL test suite: the same tests against a real bench (``--target hw``), our gateware in
Verilator (``rtl``) and the behavioural boards (``model``). See docs/hil.md."""
