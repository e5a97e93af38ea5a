"""Therapist accounts: validation that names the bad field, and how accounts are found."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import accounts
from server.models import Therapist
from server.passwords import MIN_PASSWORD_LENGTH, check_strength, verify_password

PASSWORD = "a long enough passphrase"


async def create(
    db: async_sessionmaker[AsyncSession],
    *,
    email: str = "noor.haddad@example.com",
    name: str = "Noor Haddad",
    timezone: str = "Asia/Amman",
    password: str = PASSWORD,
) -> Therapist:
    async with db() as session, session.begin():
        return await accounts.create_therapist(
            session, email=email, name=name, timezone=timezone, password=password
        )


async def therapist_count(db: async_sessionmaker[AsyncSession]) -> int:
    async with db() as session:
        return await session.scalar(select(func.count()).select_from(Therapist)) or 0


async def test_create_therapist_normalizes_email_and_name_and_hashes_with_argon2id(
    db: async_sessionmaker[AsyncSession],
) -> None:
    therapist = await create(db, email="  Noor.Haddad@Example.COM ", name="  Noor   Haddad ")

    assert therapist.email == "noor.haddad@example.com"
    assert therapist.display_name == "Noor Haddad"
    assert therapist.timezone == "Asia/Amman"
    assert therapist.password_hash.startswith("$argon2id$")
    assert await verify_password(therapist.password_hash, PASSWORD)
    assert not await verify_password(therapist.password_hash, PASSWORD + "!")


async def test_by_email_finds_an_account_whatever_the_case_and_surrounding_space(
    db: async_sessionmaker[AsyncSession],
) -> None:
    created = await create(db)

    async with db() as session:
        found = await accounts.by_email(session, " NOOR.haddad@example.com")
        missing = await accounts.by_email(session, "someone.else@example.com")

    assert found is not None and found.id == created.id
    assert missing is None


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("email", {"email": "noor.example.com"}),
        ("email", {"email": "noor@localhost"}),
        ("email", {"email": "noor haddad@example.com"}),
        ("email", {"email": "<noor>@example.com"}),
        ("email", {"email": "n" * 250 + "@example.com"}),
        ("name", {"name": ""}),
        ("name", {"name": "x" * 121}),
        ("timezone", {"timezone": "Europe/Atlantis"}),
        ("timezone", {"timezone": "EST5EDT6"}),
        ("timezone", {"timezone": ""}),
        ("password", {"password": "123456789"}),
        ("password", {"password": "x" * 1025}),
    ],
    ids=[
        "email-no-at",
        "email-no-domain-dot",
        "email-space",
        "email-angle",
        "email-too-long",
        "name-empty",
        "name-too-long",
        "zone-unknown",
        "zone-garbage",
        "zone-empty",
        "password-9-chars",
        "password-too-long",
    ],
)
async def test_create_therapist_refuses_a_bad_field_naming_it_and_adds_nothing(
    db: async_sessionmaker[AsyncSession], field: str, overrides: dict[str, str]
) -> None:
    with pytest.raises(accounts.InvalidAccount) as raised:
        await create(db, **overrides)

    assert str(raised.value).startswith(f"{field}: ")
    assert "\n" not in str(raised.value)
    assert await therapist_count(db) == 0


async def test_create_therapist_refuses_a_second_account_for_the_same_email(
    db: async_sessionmaker[AsyncSession],
) -> None:
    await create(db)

    with pytest.raises(accounts.InvalidAccount, match=r"^email: .*already exists"):
        await create(db, email="Noor.Haddad@example.com", name="Another Noor")

    assert await therapist_count(db) == 1


def test_password_of_exactly_the_minimum_length_is_accepted_by_validation() -> None:
    check_strength("x" * MIN_PASSWORD_LENGTH)
    with pytest.raises(ValueError, match=str(MIN_PASSWORD_LENGTH)):
        check_strength("x" * (MIN_PASSWORD_LENGTH - 1))
