"""Build Prompt-to-Prompt yourself: notebook 07's exercises, their checkers, and the learner's
own edit on the real pipeline.
"""
