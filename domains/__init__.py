"""Reference stakeholder domains, each a package with its ``domain.toml``.

- ``oem``   (device maker): platform information and trusted timestamps;
- ``meter`` (utility): periodic meter readings, each timestamped by ``oem``;
- ``mno``   (network operator): a placeholder MID service (MIDs arrive with later work);
- ``vault`` (an isolated domain): reaches nothing and nothing reaches it.

They are registered in the ``tre.domains`` entry-point group (pyproject.toml) and can also
be loaded from their folders with :func:`tre.load_domain_dir`.
"""
