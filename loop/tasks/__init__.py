"""Task families: what an example is, how the teacher is prompted, how output is parsed and scored."""
