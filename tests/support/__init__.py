"""Test helpers: throwaway services and small factories."""
