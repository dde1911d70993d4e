"""Planning: from a checked IR to the stage graph with content keys, the token budget per mixture leaf,
size estimates, the joint vocabulary layout, semantic diffs, and their reports. No stage runs here.
"""
