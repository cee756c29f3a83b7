"""Shared building blocks used by the per-paper subpackages (torch-only unless a submodule says otherwise)."""
