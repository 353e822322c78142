"""The Streamlit Pareto-frontier dashboard; it reads only from the SQL store."""
