"""speechkit.bin"""
