"""Request serializers: strict JSON types, and fields built once per class without mixing requests."""

from chats.apis import OneShotInputSerializer, TurnInputSerializer


def test_shared_fields_keep_each_requests_data_and_errors_apart():
    bad = TurnInputSerializer(data={"message": 123, "max_tokens": 0})
    good = TurnInputSerializer(data={"message": "hi", "max_tokens": 5})

    assert not bad.is_valid()
    assert good.is_valid()
    assert bad.errors == {
        "message": ["Must be a string."],
        "max_tokens": ["Ensure this value is greater than or equal to 1."],
    }
    assert (good.validated_data["message"], good.validated_data["max_tokens"]) == ("hi", 5)
    assert not good.errors


def test_fields_are_built_once_per_class():
    assert TurnInputSerializer(data={}).fields is TurnInputSerializer(data={}).fields
    # a subclass has its own (it adds chat_id)
    assert "chat_id" in OneShotInputSerializer(data={}).fields
    assert "chat_id" not in TurnInputSerializer(data={}).fields
