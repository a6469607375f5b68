"""speechkit.corpora"""
