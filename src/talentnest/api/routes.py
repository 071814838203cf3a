"""The product routes: auth, users, posts. They call services only; a route that only reads does so
through ``services.read`` (off the event loop), but for a post by its key (``get_post``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from talentnest.api._marks import writes
from talentnest.api.deps import client_address, current_user, limited_writer, optional_user, product_of
from talentnest.api.models import (
    AccountDeletionIn,
    CommentIn,
    CommentOut,
    CommentPage,
    ExportOut,
    LoginIn,
    MeOut,
    PasswordChangeIn,
    PostIn,
    PostOut,
    PostPage,
    ProfileIn,
    SessionOut,
    SignupIn,
    UserOut,
    UserPage,
    errors,
)
from talentnest.services import rules

MAX_ID = 2**63 - 1
PostId = Annotated[int, Path(ge=1, le=MAX_ID, description="a post's id")]
CommentId = Annotated[int, Path(ge=1, le=MAX_ID, description="a comment's id")]
Username = Annotated[str, Path(min_length=1, max_length=64, description="a username")]
Limit = Annotated[int | None, Query(ge=1, le=rules.PAGE_MAX, description=f"items per page (default {rules.PAGE_DEFAULT})")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]
User = Annotated[int, Depends(current_user)]
# The caller of a write that the write limits count (posts, comments, likes, follows).
Writer = Annotated[int, Depends(limited_writer)]
Viewer = Annotated[int | None, Depends(optional_user)]

router = APIRouter(prefix="/api")


def token_optional() -> dict[str, Any]:
    """Route keywords that declare the bearer token optional (it changes ``liked_by_me`` only)."""
    return {"openapi_extra": {"security": [{}]}}


# --- auth --------------------------------------------------------------------------------------


@router.post(
    "/auth/signup",
    operation_id="signup",
    status_code=201,
    response_model=SessionOut,
    tags=["auth"],
    responses=errors(400, 409, 413, 415, 422),
    **writes(),
)
async def signup(body: SignupIn, request: Request) -> dict[str, Any]:
    """Create an account; answers the token and the new user."""
    services = product_of(request)
    session = await services.auth.signup(name=body.name, username=body.username, email=body.email, password=body.password)
    return session.as_dict()


@router.post(
    "/auth/login", operation_id="login", response_model=SessionOut, tags=["auth"], responses=errors(400, 401, 413, 415, 422, 429)
)
async def login(body: LoginIn, request: Request) -> dict[str, Any]:
    """Log in with ``password`` and ``username`` or ``email`` (a read: any node answers).

    Repeated failures for one account, or from one address, are answered 429 with Retry-After."""
    services = product_of(request)
    session = await services.auth.login(
        username=body.username, email=body.email, password=body.password, client=client_address(request)
    )
    return session.as_dict()


@router.post(
    "/auth/password",
    operation_id="changePassword",
    response_model=SessionOut,
    tags=["auth"],
    responses=errors(400, 401, 403, 413, 415, 422, 429),
    **writes(),
)
async def change_password(body: PasswordChangeIn, user: User, request: Request) -> dict[str, Any]:
    """Change your password (``old_password``, ``new_password``): every token of the account ends, on
    every node, including the one sent; answers a new token. A wrong ``old_password`` is 403 and counts
    as a failed login (429 after too many)."""
    services = product_of(request)
    session = await services.auth.change_password(
        user, old_password=body.old_password, new_password=body.new_password, client=client_address(request)
    )
    return session.as_dict()


@router.get("/auth/me", operation_id="getMe", response_model=MeOut, tags=["auth"], responses=errors(401))
async def me(user: User, request: Request) -> dict[str, Any]:
    """The user whose token this is, with their email."""
    services = product_of(request)
    return await services.read(services.auth.me, user)


# --- users -------------------------------------------------------------------------------------


@router.get("/users/search", operation_id="searchUsers", response_model=UserPage, tags=["users"], responses=errors(422))
async def search_users(
    request: Request,
    query: Annotated[str, Query(min_length=1, max_length=rules.QUERY_MAX, description="words to find")],
    limit: Limit = None,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Users whose username, name, headline or skills hold every word (as a word or the start of one),
    best match first: exact username, exact name, username prefix, exact skill, the rest."""
    services = product_of(request)
    return await services.read(lambda: services.users.search(query, limit=limit, cursor=cursor).as_dict())


@router.get("/users/me", operation_id="getMyProfile", response_model=MeOut, tags=["users"], responses=errors(401))
async def my_profile(user: User, request: Request) -> dict[str, Any]:
    """Your own profile, with your email (the same as /api/auth/me)."""
    services = product_of(request)
    return await services.read(services.auth.me, user)


@router.patch(
    "/users/me",
    operation_id="updateMyProfile",
    response_model=MeOut,
    tags=["users"],
    responses=errors(400, 401, 413, 415, 422),
    **writes(),
)
async def update_me(body: ProfileIn, user: User, request: Request) -> dict[str, Any]:
    """Change name, headline, bio, location or skills (omitted fields stay as they are)."""
    services = product_of(request)
    return services.users.update_profile(user, body.model_dump(exclude_unset=True, exclude_none=True))


@router.delete(
    "/users/me",
    operation_id="deleteMyAccount",
    status_code=204,
    response_class=Response,
    tags=["users"],
    responses=errors(400, 401, 403, 413, 415, 422, 429),
    **writes(),
)
async def delete_me(body: Annotated[AccountDeletionIn, Body()], user: User, request: Request) -> Response:
    """Delete your account (confirmed with ``password``) with your posts (and their likes and comments),
    comments, likes and follows, on every node; every token of it ends. A wrong password is 403 and
    counts as a failed login (429 after too many)."""
    services = product_of(request)
    await services.auth.delete_account(user, password=body.password, client=client_address(request))
    return Response(status_code=204)


@router.get(
    "/users/me/export",
    operation_id="exportMyData",
    response_class=StreamingResponse,
    tags=["users"],
    responses={200: {"model": ExportOut, "description": "Your data, as JSON"}, **errors(401)},
)
async def export_me(user: User, request: Request) -> StreamingResponse:
    """All your data as one JSON document: profile (with email), posts, comments, likes, the users you
    follow and those who follow you, each oldest first. Streamed a page at a time (any node answers)."""
    services = product_of(request)
    document = services.exports.document(user, services.read)
    first = await anext(document)  # the account is read before the answer starts: 401 if it is gone

    async def pieces():
        yield first
        async for piece in document:
            yield piece

    return StreamingResponse(pieces(), media_type="application/json")


@router.get("/users/{username}", operation_id="getUser", response_model=UserOut, tags=["users"], responses=errors(404, 422))
async def get_user(username: Username, request: Request) -> dict[str, Any]:
    services = product_of(request)
    return await services.read(services.users.profile, username)


@router.post(
    "/users/{username}/follow",
    operation_id="followUser",
    response_model=UserOut,
    tags=["users"],
    responses=errors(401, 404, 422, 429),
    **writes(),
)
async def follow(username: Username, user: Writer, request: Request) -> dict[str, Any]:
    """Follow a user (following twice changes nothing); answers the followed user."""
    services = product_of(request)
    return services.users.follow(user, username)


@router.delete(
    "/users/{username}/follow",
    operation_id="unfollowUser",
    response_model=UserOut,
    tags=["users"],
    responses=errors(401, 404, 422),
    **writes(),
)
async def unfollow(username: Username, user: User, request: Request) -> dict[str, Any]:
    services = product_of(request)
    return services.users.unfollow(user, username)


@router.get(
    "/users/{username}/followers",
    operation_id="listFollowers",
    response_model=UserPage,
    tags=["users"],
    responses=errors(404, 422),
)
async def followers(username: Username, request: Request, limit: Limit = None, cursor: Cursor = None) -> dict[str, Any]:
    services = product_of(request)
    return await services.read(lambda: services.users.followers(username, limit=limit, cursor=cursor).as_dict())


@router.get(
    "/users/{username}/following",
    operation_id="listFollowing",
    response_model=UserPage,
    tags=["users"],
    responses=errors(404, 422),
)
async def following(username: Username, request: Request, limit: Limit = None, cursor: Cursor = None) -> dict[str, Any]:
    services = product_of(request)
    return await services.read(lambda: services.users.following(username, limit=limit, cursor=cursor).as_dict())


# --- posts -------------------------------------------------------------------------------------


@router.post(
    "/posts",
    operation_id="createPost",
    status_code=201,
    response_model=PostOut,
    response_model_exclude_unset=True,
    tags=["posts"],
    responses=errors(400, 401, 413, 415, 422, 429),
    **writes(),
)
async def create_post(body: PostIn, user: Writer, request: Request) -> dict[str, Any]:
    services = product_of(request)
    return services.posts.create(user, body.content)


@router.get(
    "/posts",
    operation_id="listPosts",
    response_model=PostPage,
    response_model_exclude_unset=True,
    tags=["posts"],
    responses=errors(401, 404, 422),
    **token_optional(),
)
async def list_posts(
    request: Request,
    viewer: Viewer,
    author: Annotated[str | None, Query(min_length=1, max_length=64, description="only this user's posts")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Newest first; all posts, or one author's."""
    services = product_of(request)
    return await services.read(lambda: services.posts.list(author=author, viewer_id=viewer, limit=limit, cursor=cursor).as_dict())


@router.get(
    "/feed",
    operation_id="getFeed",
    response_model=PostPage,
    response_model_exclude_unset=True,
    tags=["posts"],
    responses=errors(401, 422),
)
async def feed(user: User, request: Request, limit: Limit = None, cursor: Cursor = None) -> dict[str, Any]:
    """Posts of the users you follow and your own, newest first."""
    services = product_of(request)
    return await services.read(lambda: services.posts.feed(user, limit=limit, cursor=cursor).as_dict())


@router.get(
    "/posts/{post_id}",
    operation_id="getPost",
    response_model=PostOut,
    response_model_exclude_unset=True,
    tags=["posts"],
    responses=errors(401, 404, 422),
    **token_optional(),
)
async def get_post(post_id: PostId, viewer: Viewer, request: Request) -> dict[str, Any]:
    services = product_of(request)
    # On the event loop, not through ``services.read``: a post by its key is a few index seeks (its
    # counts are kept on its row), a few microseconds of SQL, where the hop to a reader thread and back
    # costs 40-60 us of CPU (benchmarks/README.md, issue 13). It reads on the writer's connection, on the
    # thread that owns it, between writes (a write's transaction never spans an await).
    return services.posts.get(post_id, viewer)


@router.patch(
    "/posts/{post_id}",
    operation_id="updatePost",
    response_model=PostOut,
    response_model_exclude_unset=True,
    tags=["posts"],
    responses=errors(400, 401, 403, 404, 413, 415, 422),
    **writes(),
)
async def update_post(post_id: PostId, body: PostIn, user: User, request: Request) -> dict[str, Any]:
    services = product_of(request)
    return services.posts.update(user, post_id, body.content)


@router.delete(
    "/posts/{post_id}",
    operation_id="deletePost",
    status_code=204,
    response_class=Response,
    tags=["posts"],
    responses=errors(401, 403, 404, 422),
    **writes(),
)
async def delete_post(post_id: PostId, user: User, request: Request) -> Response:
    services = product_of(request)
    services.posts.delete(user, post_id)
    return Response(status_code=204)


@router.post(
    "/posts/{post_id}/like",
    operation_id="likePost",
    response_model=PostOut,
    response_model_exclude_unset=True,
    tags=["posts"],
    responses=errors(401, 404, 422, 429),
    **writes(),
)
async def like(post_id: PostId, user: Writer, request: Request) -> dict[str, Any]:
    """Like a post (liking twice changes nothing); answers the post."""
    services = product_of(request)
    return services.posts.like(user, post_id)


@router.delete(
    "/posts/{post_id}/like",
    operation_id="unlikePost",
    response_model=PostOut,
    response_model_exclude_unset=True,
    tags=["posts"],
    responses=errors(401, 404, 422),
    **writes(),
)
async def unlike(post_id: PostId, user: User, request: Request) -> dict[str, Any]:
    services = product_of(request)
    return services.posts.unlike(user, post_id)


@router.post(
    "/posts/{post_id}/comments",
    operation_id="createComment",
    status_code=201,
    response_model=CommentOut,
    tags=["posts"],
    responses=errors(400, 401, 404, 413, 415, 422, 429),
    **writes(),
)
async def comment(post_id: PostId, body: CommentIn, user: Writer, request: Request) -> dict[str, Any]:
    services = product_of(request)
    return services.posts.comment(user, post_id, body.content)


@router.get(
    "/posts/{post_id}/comments",
    operation_id="listComments",
    response_model=CommentPage,
    tags=["posts"],
    responses=errors(404, 422),
)
async def comments(post_id: PostId, request: Request, limit: Limit = None, cursor: Cursor = None) -> dict[str, Any]:
    """Oldest first."""
    services = product_of(request)
    return await services.read(lambda: services.posts.comments(post_id, limit=limit, cursor=cursor).as_dict())


@router.delete(
    "/posts/{post_id}/comments/{comment_id}",
    operation_id="deleteComment",
    status_code=204,
    response_class=Response,
    tags=["posts"],
    responses=errors(401, 403, 404, 422),
    **writes(),
)
async def delete_comment(post_id: PostId, comment_id: CommentId, user: User, request: Request) -> Response:
    """The comment's author or the post's author may delete it."""
    services = product_of(request)
    services.posts.delete_comment(user, post_id, comment_id)
    return Response(status_code=204)
