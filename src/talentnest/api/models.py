"""Request and response shapes of the product API (the OpenAPI schema is built from these)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from talentnest.services import rules


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class SignupIn(_In):
    name: str = Field(min_length=1, max_length=rules.NAME_MAX, examples=["Test User"])
    username: str = Field(
        min_length=rules.USERNAME_MIN, max_length=rules.USERNAME_MAX, pattern=rules.USERNAME_PATTERN, examples=["testuser"]
    )
    email: str = Field(
        min_length=3, max_length=rules.EMAIL_MAX, examples=["test@example.com"], json_schema_extra={"format": "email"}
    )
    password: str = Field(min_length=rules.PASSWORD_MIN, max_length=rules.PASSWORD_MAX, examples=["password123"])


class LoginIn(_In):
    # One of username or email must be a string (checked by the service; declared for clients).
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["username"], "properties": {"username": {"type": "string"}}},
                {"required": ["email"], "properties": {"email": {"type": "string"}}},
            ]
        }
    )

    username: str | None = Field(default=None, max_length=rules.EMAIL_MAX, description="a username, or an email")
    email: str | None = Field(default=None, max_length=rules.EMAIL_MAX)
    password: str = Field(max_length=rules.PASSWORD_MAX)


class PasswordChangeIn(_In):
    old_password: str = Field(max_length=rules.PASSWORD_MAX, description="the account's current password")
    new_password: str = Field(min_length=rules.PASSWORD_MIN, max_length=rules.PASSWORD_MAX, examples=["a new passphrase"])


class AccountDeletionIn(_In):
    password: str = Field(max_length=rules.PASSWORD_MAX, description="the account's password, to confirm")


class ProfileIn(_In):
    name: str | None = Field(default=None, min_length=1, max_length=rules.NAME_MAX)
    headline: str | None = Field(default=None, max_length=rules.HEADLINE_MAX)
    bio: str | None = Field(default=None, max_length=rules.BIO_MAX)
    location: str | None = Field(default=None, max_length=rules.LOCATION_MAX)
    skills: list[str] | None = Field(default=None, max_length=rules.SKILLS_MAX)


class PostIn(_In):
    content: str = Field(min_length=1, max_length=rules.POST_MAX, examples=["Hello, Talent Nest"])


class CommentIn(_In):
    content: str = Field(min_length=1, max_length=rules.COMMENT_MAX)


class UserOut(BaseModel):
    id: int
    name: str
    username: str
    headline: str
    bio: str
    location: str
    skills: list[str]
    follower_count: int
    following_count: int
    created_at: str


class MeOut(UserOut):
    email: str
    updated_at: str


class SessionOut(BaseModel):
    token: str
    user: MeOut


class AuthorOut(BaseModel):
    id: int
    username: str
    name: str
    headline: str


class PostOut(BaseModel):
    id: int
    author: AuthorOut
    content: str
    like_count: int
    comment_count: int
    liked_by_me: bool | None = Field(default=None, description="present when a token is sent")
    created_at: str
    updated_at: str


class CommentOut(BaseModel):
    id: int
    post_id: int
    author: AuthorOut
    content: str
    created_at: str


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class PostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None


class CommentPage(BaseModel):
    items: list[CommentOut]
    next_cursor: str | None


class ExportPostOut(BaseModel):
    id: int
    content: str
    like_count: int
    comment_count: int
    created_at: str
    updated_at: str


class ExportCommentOut(BaseModel):
    id: int
    post_id: int
    content: str
    created_at: str


class ExportLikeOut(BaseModel):
    post_id: int
    created_at: str


class ExportFollowOut(BaseModel):
    user_id: int
    username: str
    followed_at: str


class ExportOut(BaseModel):
    """Everything of one member, each list oldest first."""

    exported_at: str
    profile: MeOut
    posts: list[ExportPostOut]
    comments: list[ExportCommentOut]
    likes: list[ExportLikeOut] = Field(description="the posts you like")
    following: list[ExportFollowOut] = Field(description="the users you follow")
    followers: list[ExportFollowOut] = Field(description="the users who follow you")


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable and machine-readable, e.g. username_taken")
    message: str = Field(description="for people; names the field and the rule")
    fields: list[FieldError] | None = Field(default=None, description="on 422 from field checks: each bad field")


class ErrorOut(BaseModel):
    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    descriptions = {
        400: "Malformed JSON",
        401: "Missing, invalid or expired token, or wrong credentials",
        403: "Not the author, or not the account's password",
        404: "No such user, post or comment",
        409: "Username or email already taken",
        413: "Body larger than 1 MiB",
        415: "Body not sent as JSON",
        422: "Invalid fields",
        429: "Too many attempts or writes; see Retry-After",
        503: "No leader reachable for a write, or the node is not ready",
    }
    return {s: {"model": ErrorOut, "description": descriptions[s]} for s in statuses}
