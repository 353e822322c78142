"""LLM gateway (litellm), Agent-as-a-Judge and the orchestrating agent."""
