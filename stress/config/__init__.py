"""The run's inputs: config schemas, composition and validation with their messages, the shock algebra of a
scenario, the loan tape, and where config folders are found.

Imports: stress.errors only (no other room); nothing here simulates.
"""
