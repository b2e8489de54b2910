"""Students: the small models the loop refines."""
