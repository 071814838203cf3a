"""The product's rules: accounts, profiles, follows, posts. No HTTP and no replication here."""

from talentnest.services.auth import AuthService, Passwords, Tokens
from talentnest.services.posts import PostService
from talentnest.services.users import UserService

__all__ = ["AuthService", "Passwords", "PostService", "Tokens", "UserService"]
