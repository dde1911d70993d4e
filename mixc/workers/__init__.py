"""Stage workers: scripts that run a backend in an environment of its own and exchange files with the
compiler. Each is a standalone script (standard library, numpy and its engine only), run as
`PYTHON path/to/worker.py REQUEST_DIR RESULT_DIR`, so the worker's environment needs no mixc.
"""
