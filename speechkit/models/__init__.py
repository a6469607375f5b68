"""speechkit.models"""
