"""What the type checker knows of an AWS client: nothing.

boto3 builds its clients at run time from service models and ships no types (typed stubs,
boto3-stubs, are not pinned here), so a client is `Any` under a name that says which service
it speaks to.
"""

from typing import Any, TypeAlias

S3Client: TypeAlias = Any
SSMClient: TypeAlias = Any
