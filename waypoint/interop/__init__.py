"""Interoperability with LangChain, which is never a dependency: used only when present."""
