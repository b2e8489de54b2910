"""loop: error-driven, active-learning refinement of small models with a teacher LLM."""

__version__ = "0.1.0"
