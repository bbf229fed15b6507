"""Development-only: the local AWS endpoint, the ServiceNow emulator and the demo.

Left out of the Lambda layer.
"""
