"""textgen: Chinese text generation (titles, SPACES summaries, QA pairs, MCMC search, continuation)."""

__version__ = "0.1.0"
