"""speechkit.train"""
