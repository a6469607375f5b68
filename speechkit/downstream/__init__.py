"""speechkit.downstream"""
