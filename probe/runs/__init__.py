"""What each command does, as a library call: `align.run_align`, `linear.run_linear`, `demo.run_demo`.

`inputs` turns names into datasets and paired caches (extracting what is missing), `score_cache` keeps
computed scores keyed by everything they depend on. The CLI parses flags into one settings object and
calls one function here.
"""
