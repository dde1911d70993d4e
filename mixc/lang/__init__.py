"""The .mix language: text -> AST (syntax) -> merged items (extends) -> typed IR (lower) -> checks.

Nothing here imports planning or building: the language knows the IR and nothing downstream of it.
"""
