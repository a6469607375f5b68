"""speechkit.text"""
