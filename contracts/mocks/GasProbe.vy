# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Gas probe for benchmarks (test double)
@custom:contract-name GasProbe
@license MIT
@notice Calls a target with raw calldata and returns the gas the call used,
        measured in the EVM with `msg.gas` before and after, so benchmarks
        report execution gas without the 21,000 intrinsic transaction cost.
        The figure includes the `CALL`/`STATICCALL` itself (cold access to the
        target: 2,600) and the copy of up to 1,024 bytes of return data.
@custom:security Test tooling only: `measure` forwards any calldata to any
                 target from this contract's address. It holds no funds and no
                 roles; never grant it any.
"""


# @dev Return data kept from the target (enough for any revert string).
_MAX_RETURN: constant(uint256) = 1_024


# @dev Emitted by `measure` with the gas used by the measured call.
event Measured:
    target: indexed(address)
    gas_used: uint256


@external
@view
def measure_view(_target: address, _data: Bytes[4_096]) -> uint256:
    """
    @dev Staticcalls `_target` with `_data` and returns the gas it used.
         Reverts with the callee's revert data if the call fails.
    @param _target The contract to call.
    @param _data The calldata (selector and arguments).
    @return uint256 The gas used by the call.
    """
    # Allocate and fill memory before measuring, so that the figure is
    # the call's alone (no memory expansion of this frame is counted).
    gas_before: uint256 = 0
    data: Bytes[4_096] = _data
    success: bool = False
    response: Bytes[_MAX_RETURN] = b""
    gas_before = msg.gas
    success, response = raw_call(
        _target,
        data,
        max_outsize=_MAX_RETURN,
        is_static_call=True,
        revert_on_failure=False,
    )
    # Cannot underflow: gas only decreases during execution.
    gas_used: uint256 = unsafe_sub(gas_before, msg.gas)
    if not success:
        raw_revert(response)
    return gas_used


@external
def measure(_target: address, _data: Bytes[4_096]) -> uint256:
    """
    @dev Calls `_target` with `_data`, logs `Measured` and returns the gas the
         call used. Reverts with the callee's revert data if the call fails.
    @param _target The contract to call.
    @param _data The calldata (selector and arguments).
    @return uint256 The gas used by the call.
    """
    # Allocate and fill memory before measuring, so that the figure is
    # the call's alone (no memory expansion of this frame is counted).
    gas_before: uint256 = 0
    data: Bytes[4_096] = _data
    success: bool = False
    response: Bytes[_MAX_RETURN] = b""
    gas_before = msg.gas
    success, response = raw_call(_target, data, max_outsize=_MAX_RETURN, revert_on_failure=False)
    # Cannot underflow: gas only decreases during execution.
    gas_used: uint256 = unsafe_sub(gas_before, msg.gas)
    if not success:
        raw_revert(response)
    log Measured(target=_target, gas_used=gas_used)
    return gas_used
