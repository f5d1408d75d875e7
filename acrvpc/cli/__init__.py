"""The command line: ``acrvpc`` (``app``), its commands (``commands``), rendering (``report``, ``live``)."""
