"""speechkit.io"""
