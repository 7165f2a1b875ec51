"""What the server process (quantumtrades.asgi) changes in the libraries under it."""

from twisted.web import http as twisted_http

import quantumtrades.asgi  # noqa: F401  (the server's module: it applies what is tested here)


def test_twisted_remembers_content_types_and_parses_them_as_before():
    parse = twisted_http._parseContentType
    email_parse = parse.__wrapped__  # Twisted's own, through the email package
    lines = [
        b"application/json",
        b"Application/JSON; charset=UTF-8",
        b"application/x-www-form-urlencoded",
        b'multipart/form-data; boundary="----x"',
        b"text/plain;charset=latin-1",
        b"nonsense",
        b"",
    ]
    parse.cache_clear()

    first = [parse(line) for line in lines]
    again = [parse(line) for line in lines]

    assert first == again == [email_parse(line) for line in lines]
    assert first[:3] == [b"application/json", b"application/json", b"application/x-www-form-urlencoded"]
    assert parse.cache_info().hits == len(lines) and parse.cache_info().currsize == len(lines)


def test_the_remembered_content_types_are_bounded():
    parse = twisted_http._parseContentType
    parse.cache_clear()

    for index in range(5000):
        parse(b"application/x-%d" % index)  # a client may send any number of different ones

    assert parse.cache_info().currsize <= parse.cache_info().maxsize < 5000
