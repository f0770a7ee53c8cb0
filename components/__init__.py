"""KFP components, one file per stage: each maps artifacts to paths and calls `kdflow.stages.<stage>.run`.

Bodies run inside the kdflow image (or, with kfp.local, in this environment); they import
everything they use because KFP ships only the function's source.
"""
