"""`hark transcribe|encode|decode|reconstruct|enroll|extract|classify`: the shipped (or a given)
ONNX models on files, without a server. One module per family; see hark/run/common.py."""
