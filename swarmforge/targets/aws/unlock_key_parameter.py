"""The aws target's unlock key store: an SSM SecureString, /swarmforge/<cluster>/unlock-key,
in the cluster's region; encrypted with SSM's default key, or the KMS key the
``unlock_key_kms_key_id`` setting names. docs/iam/apply.json grants exactly its reads,
writes and deletion."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from swarmforge.settings import Settings
from swarmforge.targets.aws import client
from swarmforge.unlock_keys import UnlockKeys


def parameter_name(cluster: str) -> str:
    return f"/swarmforge/{cluster}/unlock-key"


class UnlockKeyParameter:
    """A cluster's unlock keys as one SecureString: the current key and, while a rotation
    settles, the previous one, written together (never half a rotation)."""

    def __init__(self, settings: Settings) -> None:
        self.name = parameter_name(settings.cluster)
        self.region = settings.region
        self.kms_key_id = settings.unlock_key_kms_key_id
        self._ssm: Any = None
        self._endpoint = settings.aws_endpoint

    @property
    def where(self) -> str:
        return f"SSM SecureString {self.name} in {self.region}"

    @property
    def ssm(self) -> Any:
        if self._ssm is None:
            self._ssm = client("ssm", self.region, self._endpoint)
        return self._ssm

    def get(self) -> UnlockKeys | None:
        try:
            answer = self.ssm.get_parameter(Name=self.name, WithDecryption=True)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise
        return UnlockKeys.from_text(answer["Parameter"]["Value"], self.where)

    def put(self, keys: UnlockKeys) -> None:
        encryption = {"KeyId": self.kms_key_id} if self.kms_key_id else {}
        self.ssm.put_parameter(Name=self.name, Value=keys.to_text(), Type="SecureString",
                               Overwrite=True, Tier="Standard",
                               Description="swarmforge: the swarm's unlock key (autolock)",
                               **encryption)

    def delete(self) -> None:
        try:
            self.ssm.delete_parameter(Name=self.name)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ParameterNotFound":
                raise
