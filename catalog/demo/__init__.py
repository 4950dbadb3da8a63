"""Deterministic demo catalogue: drawn product photos and simulated shoppers.

``drawing`` and ``simulation`` are pure (PIL / numpy, no Django) so they can run in
worker processes and be tested in isolation; ``builder`` writes their output into
the database and is what the ``visrec_demo`` management command calls.
"""
