"""Teacher back-ends: one file each, behind the contract in base.py."""
