"""`xmarks token`: issue a connect token with the server's key file (a token service in
one command, for trying the server out and for scripts)."""

from __future__ import annotations

import json

import click

from net.address import parse_endpoint
from net.keys import KeyFileError, load_key
from net.token import MAX_TOKEN_SERVERS, TokenError, issue_token
from net.wire import MAX_NAME_BYTES
from tick.clock import unix_s

U64_MAX = 2**64 - 1


def _parse_endpoint(text: str) -> tuple[str, int]:
    """IPv4:PORT -> (host, port), or the one-line usage error naming --server."""
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise click.UsageError(f"--server: {exc}") from None


@click.command()
@click.option("--key-file", default="xmarks.key", show_default=True, metavar="PATH",
              help="The server's token key (64 hex characters; `xmarks serve` uses the same).")
@click.option("--server", "servers", multiple=True, required=True, metavar="IPV4:PORT",
              help=f"A server the token admits to; repeat for up to {MAX_TOKEN_SERVERS}, "
                   "in the order the client should try them.")
@click.option("--client-id", type=click.IntRange(0, U64_MAX), required=True, metavar="N",
              help="The client's id, a u64 (the game's account id).")
@click.option("--name", default="", show_default=True,
              help="Player name shown in game, at most 32 UTF-8 bytes.")
@click.option("--expires", type=click.IntRange(min=1), default=300, show_default=True,
              metavar="SECONDS", help="Seconds the token stays valid for connecting.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: token, client_id, name, servers, create, expire.")
def token(key_file, servers, client_id, name, expires, as_json) -> None:
    """Issue a connect token: print it on one line (base64url) for a client to use.

    The session keys travel inside the token; treat it as a secret until it expires.

    \b
    Examples:
      xmarks token --server 127.0.0.1:7777 --client-id 42 --name ada
      xmarks token --key-file /etc/xmarks/key --server 203.0.113.5:7777 \\
                   --server 203.0.113.6:7777 --client-id 42 --expires 60 --json
    """
    if len(servers) > MAX_TOKEN_SERVERS:
        raise click.UsageError(f"--server: at most {MAX_TOKEN_SERVERS} servers, "
                               f"got {len(servers)}")
    endpoints = [_parse_endpoint(s) for s in servers]
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # argv bytes that are not UTF-8 arrive as lone surrogates
        raise click.UsageError("--name: not valid UTF-8 text") from None
    if size > MAX_NAME_BYTES:
        raise click.UsageError(f"--name: {size} UTF-8 bytes, at most {MAX_NAME_BYTES}")
    try:
        key = load_key(key_file)
    except KeyFileError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        issued = issue_token(key, client_id, endpoints, name, unix_s(), expires)
    except TokenError as exc:
        raise click.UsageError(str(exc)) from None
    text = issued.to_text()
    if as_json:
        click.echo(json.dumps({"token": text, "client_id": client_id, "name": name,
                               "servers": [f"{h}:{p}" for h, p in issued.servers],
                               "create": issued.create, "expire": issued.expire}))
    else:
        click.echo(text)
