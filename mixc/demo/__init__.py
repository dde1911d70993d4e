"""The demo's inputs, generated offline (conversations with known turns, Factbook text), and the
scoring that compares what the pipeline found with that truth. Nothing in the compiler imports it.
"""
