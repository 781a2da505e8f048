"""The `parley` command: run the service, chat with a conversation, validate PromptPacks.

    parley serve [--host H] [--port P] [--reload] [--workers N]
    parley chat CONVERSATION_ID [--url URL] [--api-key KEY] [--create ...]
    parley export ID | --user U [--url URL] [--api-key KEY]
    parley import FILE|- [--conversation-id ID] [--user U] [--pack P --prompt N]
    parley pack validate FILE...
    parley config check FILE

Importing this module does no I/O and imports nothing heavy: each command imports what it
needs when it runs (`app.cli_chat` holds the chat client, `app.cli_transfer` export and
import, which talk to a running service over HTTP; `app.cli_serve` runs uvicorn).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_USER = "cli"

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command (also what `--help` prints)."""
    parser = argparse.ArgumentParser(
        prog="parley",
        description="Parley: persistent, streaming LLM conversations from PromptPacks.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP service (uvicorn)",
        description="Run the service with uvicorn (app.main:create_app, factory mode). "
        "Everything else is configured with PARLEY_* environment variables.",
    )
    serve.add_argument(
        "--host", default=None, help="interface to bind (default: PARLEY_HOST or 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port to bind (default: PARLEY_PORT or 8000)"
    )
    serve.add_argument(
        "--reload", action="store_true", help="restart when the code changes (development)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: WEB_CONCURRENCY or 1); exits 3 if one fails to "
        "start, 2 at once if the store cannot be served by several (SQLite)",
    )

    chat = commands.add_parser(
        "chat",
        help="chat with a conversation in the terminal",
        description="Send each line read from stdin as a message and stream the reply. "
        "Type /quit or press Ctrl-D to leave. Exits with 1 if any turn failed.",
    )
    chat.add_argument("conversation_id", metavar="CONVERSATION_ID")
    chat.add_argument(
        "--url", default=None, help=f"service URL (default: $PARLEY_URL or {DEFAULT_URL})"
    )
    chat.add_argument(
        "--api-key",
        default=None,
        help="sent as 'Authorization: Bearer KEY' (default: $PARLEY_API_KEY)",
    )
    chat.add_argument(
        "--create",
        action="store_true",
        help="create the conversation with this id first (an existing one is reused)",
    )
    chat.add_argument("--pack", default="general-assistant", help="pack of a created conversation")
    chat.add_argument("--prompt", default="chat", help="prompt of a created conversation")
    chat.add_argument(
        "--user",
        default=None,
        help=f"user_id of a created conversation (default: $PARLEY_USER or {DEFAULT_USER!r}; "
        "with a user-bound API key, give that key's user)",
    )

    export = commands.add_parser(
        "export",
        help="write a conversation's document (or a user's NDJSON) to stdout",
        description="GET /conversations/ID/export, or GET /users/U/export with --user, from "
        "a running service, streamed to stdout. Exits with 1 on an error.",
    )
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument("conversation_id", metavar="ID", nargs="?")
    target.add_argument("--user", default=None, help="export every conversation of this user")
    _service_arguments(export)

    imp = commands.add_parser(
        "import",
        help="import conversation documents (JSON or NDJSON) into a running service",
        description="POST /conversations/import for the file's document, or for each line "
        "of an NDJSON file (- reads stdin). Prints the created ids; a refused document's "
        "problems go to stderr. Exits with 1 if any document was not imported.",
    )
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--conversation-id", default=None, help="the new id (one document only)")
    imp.add_argument("--user", default=None, help="import for this user (a service key)")
    imp.add_argument("--pack", default=None, help="pack of a PromptKit state's conversation")
    imp.add_argument("--pack-version", default=None, help="its version (default: latest)")
    imp.add_argument("--prompt", default=None, help="prompt of a PromptKit state's conversation")
    _service_arguments(imp)

    pack = commands.add_parser("pack", help="PromptPack tools", description="PromptPack tools.")
    pack_commands = pack.add_subparsers(dest="pack_command", metavar="PACK_COMMAND", required=True)
    validate = pack_commands.add_parser(
        "validate",
        help="validate PromptPack JSON files",
        description="Validate PromptPack JSON files exactly as the service does when loading "
        "them. Prints 'ok FILE (ID VERSION)' or every problem; exits with 1 if any is invalid.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", type=Path)

    config = commands.add_parser(
        "config", help="RuntimeConfig tools", description="RuntimeConfig tools."
    )
    config_commands = config.add_subparsers(
        dest="config_command", metavar="CONFIG_COMMAND", required=True
    )
    check = config_commands.add_parser(
        "check",
        help="check a RuntimeConfig file (PARLEY_RUNTIME_CONFIG)",
        description="Check a PromptKit RuntimeConfig file exactly as the service does at "
        "start-up (nothing is started or connected). Prints what it binds, the sections "
        "Parley does not apply, and every problem; exits with 1 if there is any problem.",
    )
    check.add_argument("file", metavar="FILE", type=Path)
    return parser


def _service_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, help=f"service URL (default: $PARLEY_URL or {DEFAULT_URL})"
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="sent as 'Authorization: Bearer KEY' (default: $PARLEY_API_KEY)",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `parley` console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from app.cli_serve import serve

            return serve(host=args.host, port=args.port, reload=args.reload, workers=args.workers)
        if args.command == "chat":
            return _chat(args)
        if args.command in ("export", "import"):
            return _transfer(args)
        if args.command == "pack" and args.pack_command == "validate":
            return validate_packs(args.files, out=sys.stdout)
        if args.command == "config" and args.config_command == "check":
            return check_config(args.file, out=sys.stdout)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")  # unreachable: subcommands are required


# --- chat --------------------------------------------------------------------------------


def _chat(args: argparse.Namespace) -> int:
    import asyncio

    from app.cli_chat import ChatOptions, run_chat

    options = ChatOptions(
        conversation_id=args.conversation_id,
        api_key=args.api_key if args.api_key is not None else os.environ.get("PARLEY_API_KEY"),
        create=args.create,
        pack_id=args.pack,
        prompt_name=args.prompt,
        user_id=args.user or os.environ.get("PARLEY_USER") or DEFAULT_USER,
    )
    url = args.url or os.environ.get("PARLEY_URL") or DEFAULT_URL
    return asyncio.run(run_chat(options, url=url))


# --- export / import ---------------------------------------------------------------------


def _transfer(args: argparse.Namespace) -> int:
    import asyncio

    from app.cli_transfer import (
        TransferOptions,
        default_client_factory,
        export_documents,
        import_documents,
        read_input,
    )

    url = args.url or os.environ.get("PARLEY_URL") or DEFAULT_URL
    factory = default_client_factory(url)
    api_key = args.api_key if args.api_key is not None else os.environ.get("PARLEY_API_KEY")
    if args.command == "export":
        options = TransferOptions(api_key=api_key)
        return asyncio.run(
            export_documents(
                factory,
                options,
                conversation_id=args.conversation_id,
                user_id=args.user,
                out=sys.stdout.buffer,
                err=sys.stderr,
            )
        )
    options = TransferOptions(
        api_key=api_key,
        conversation_id=args.conversation_id,
        user_id=args.user,
        pack_id=args.pack,
        pack_version=args.pack_version,
        prompt_name=args.prompt,
    )
    try:
        data = read_input(args.file)
    except OSError as exc:
        print(f"import: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return asyncio.run(import_documents(factory, options, data, out=sys.stdout, err=sys.stderr))


# --- pack validate -----------------------------------------------------------------------


def validate_packs(files: Sequence[Path], *, out: TextIO) -> int:
    """Validate each file with `app.packs.parse_pack`; 0 if all are valid, else 1."""
    from app.errors import InvalidPack
    from app.packs import pack_warnings, parse_pack

    failed = False
    for file in files:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            failed = True
            print(f"{file}: {_loc([])}: cannot read: {exc.strerror or exc}", file=out)
            continue
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            failed = True
            print(f"{file}: {_loc([])}: not valid JSON: {exc}", file=out)
            continue
        try:
            pack = parse_pack(document)
        except InvalidPack as exc:
            failed = True
            for problem in exc.errors or [{"loc": [], "msg": exc.detail}]:
                print(f"{file}: {_loc(problem.get('loc', []))}: {problem.get('msg')}", file=out)
            continue
        print(f"ok {file} ({pack.id} {pack.version})", file=out)
        for warning in pack_warnings(pack):
            print(f"{file}: {_loc(warning.get('loc', []))}: warning: {warning['msg']}", file=out)
    return 1 if failed else 0


# --- config check ------------------------------------------------------------------------


def check_config(file: Path, *, out: TextIO) -> int:
    """Check a RuntimeConfig with `app.tools.check_runtime_config`; 0 if it can be applied."""
    from app.tools import check_runtime_config

    config = check_runtime_config(file)
    for problem in config.problems:
        print(f"{file}: {problem}", file=out)
    if config.problems:
        print(f"{file}: {len(config.problems)} problems; the service would not start", file=out)
        return 1
    print(f"ok {file}" + (f" ({config.name})" if config.name else ""), file=out)
    for name, tool in sorted(config.tools.items()):
        extra = " (needs approval)" if tool.approval else ""
        print(f"  tool {name}: {tool.mode}{extra}", file=out)
    for server in config.mcp_servers:
        target = server.url or " ".join([server.command or "", *server.args])
        print(f"  mcp server {server.name}: {server.transport} {target}", file=out)
    for provider in config.providers:
        price = ""
        if provider.pricing is not None:
            price = (
                f", ${provider.pricing.input_per_mtok:g}/${provider.pricing.output_per_mtok:g}"
                " per Mtok"
                + (f" (as of {provider.pricing_correct_at})" if provider.pricing_correct_at else "")
            )
        print(f"  provider {provider.id}: {provider.type} {provider.model}{price}", file=out)
    for line in config.warnings:
        print(f"{file}: warning: {line}", file=out)
    unapplied = config.unapplied_warning()
    if unapplied:
        print(f"{file}: warning: {unapplied}", file=out)
    return 0


def _loc(loc: Sequence[Any]) -> str:
    """`["prompts", "chat", "variables", 0]` -> `prompts.chat.variables.0`; root: `(root)`."""
    return ".".join(str(part) for part in loc) if loc else "(root)"


if __name__ == "__main__":
    sys.exit(main())
