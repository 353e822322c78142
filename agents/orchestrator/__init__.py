"""The orchestrating agent: from a goal file to a finished, judged MobileLLM-Flash search (``hilnas run``)."""
