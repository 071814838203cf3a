"""Rows to the product's JSON objects. Never a password hash; the email only to its owner."""

from __future__ import annotations

import json
from typing import Any


def user(row: Any, *, private: bool = False) -> dict[str, Any]:
    result = {
        "id": row["id"],
        "name": row["name"],
        "username": row["username"],
        "headline": row["headline"],
        "bio": row["bio"],
        "location": row["location"],
        "skills": json.loads(row["skills"]),
        "follower_count": row["follower_count"],
        "following_count": row["following_count"],
        "created_at": row["created_at"],
    }
    if private:
        result["email"] = row["email"]
        result["updated_at"] = row["updated_at"]
    return result


def author(row: Any) -> dict[str, Any]:
    return {
        "id": row["author_id"],
        "username": row["author_username"],
        "name": row["author_name"],
        "headline": row["author_headline"],
    }


def post(row: Any, *, with_viewer: bool) -> dict[str, Any]:
    result = {
        "id": row["id"],
        "author": author(row),
        "content": row["content"],
        "like_count": row["like_count"],
        "comment_count": row["comment_count"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    if with_viewer:
        result["liked_by_me"] = bool(row["liked_by_me"])
    return result


def comment(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "post_id": row["post_id"],
        "author": author(row),
        "content": row["content"],
        "created_at": row["created_at"],
    }
