"""net: the wire protocol (sans-IO: bytes, addresses and `now` in; events and bytes out).

Only net/udp.py opens sockets.
"""
