"""The run report's pieces and the pictures a person looks at."""
