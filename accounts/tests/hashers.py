from kreo.testing.hashers import FastArgon2PasswordHasher


class CountingArgon2PasswordHasher(FastArgon2PasswordHasher):
    """The tests' Argon2 hasher, counting each time a password reaches it."""

    calls = 0

    def verify(self, password, encoded):
        type(self).calls += 1
        return super().verify(password, encoded)

    def encode(self, password, salt):
        type(self).calls += 1
        return super().encode(password, salt)
