"""The command-line layer: one small module per command. Parse, call the library
once, render. Heavy imports (torch) happen inside the commands."""
