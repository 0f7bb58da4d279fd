"""The scripted demonstration (``isa-broker demo``) and its webhook receivers."""
