"""deepsim"""
