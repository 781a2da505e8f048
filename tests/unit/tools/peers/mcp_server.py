"""An MCP server written with the `mcp` SDK, for the tool tests.

    python mcp_server.py stdio
    python mcp_server.py streamable-http PORT
    python mcp_server.py sse PORT

Tools: get_weather(city, country), echo(text), fail(reason), nothing(), die(),
secret_tool().
"""

from __future__ import annotations

import os
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("parley-test")


@server.tool()
def get_weather(city: str, country: str) -> str:
    """Get current weather for a city"""
    return f"sunny in {city}, {country}"


@server.tool()
def echo(text: str) -> str:
    """Echo the text back"""
    return text


@server.tool()
def fail(reason: str) -> str:
    """Always fails"""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
def nothing() -> None:
    """Returns nothing"""
    return None


@server.tool()
def die() -> str:
    """Ends the server process (to test reconnection)"""
    os._exit(1)


@server.tool()
def secret_tool() -> str:
    """Filtered out by the test's tool_filter"""
    return "should never be called"


if __name__ == "__main__":
    transport = sys.argv[1]
    if transport == "stdio":
        server.run()
    else:
        import anyio
        import uvicorn

        port = int(sys.argv[2])
        app = server.streamable_http_app() if transport == "streamable-http" else server.sse_app()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        anyio.run(uvicorn.Server(config).serve)
