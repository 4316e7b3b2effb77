"""The walkthrough's GraphQL documents and the scripts that run them against real servers."""
