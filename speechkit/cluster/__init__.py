"""speechkit.cluster"""
