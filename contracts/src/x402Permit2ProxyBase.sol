// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ISignatureTransfer} from "./ISignatureTransfer.sol";

/// @notice EIP-2612's `permit`, which the proxies submit for the `eip2612GasSponsoring` extension.
interface IERC20Permit {
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;
}

/// @title x402Permit2ProxyBase
/// @notice What the x402 Permit2 proxies share: the Permit2 address, the checks every
/// settlement makes, the EIP-2612 step of `settleWithPermit`, and a reentrancy lock.
/// @dev The proxies are the `spender` in the payer's Permit2 signature, and the payee is part
/// of the signed witness, so whoever submits the settlement cannot redirect the funds: Permit2
/// recomputes the digest with the witness the proxy hashes from its arguments.
///
/// No constructor arguments and no immutables: Permit2's address is a constant, so the runtime
/// code can be copied to the proxies' canonical addresses and works there unchanged.
abstract contract x402Permit2ProxyBase {
    /// @notice The canonical Permit2.
    ISignatureTransfer public constant PERMIT2 = ISignatureTransfer(0x000000000022D473030F116dDEE9F6B43aC78BA3);

    /// @dev Transient, so the lock costs no storage write and needs no initialisation in
    /// copied code.
    bool private transient _entered;

    struct EIP2612Permit {
        uint256 value;
        uint256 deadline;
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    /// @notice A settlement through `settle` succeeded.
    event Settled();
    /// @notice A settlement through `settleWithPermit` succeeded.
    event SettledWithPermit();

    /// @notice Never raised here (Permit2's address is a constant); kept for the official ABI.
    error InvalidPermit2Address();
    /// @notice The witness names the zero address as payee.
    error InvalidDestination();
    /// @notice `block.timestamp` is before the witness's `validAfter`.
    error PaymentTooEarly();
    /// @notice The owner is the zero address.
    error InvalidOwner();
    /// @notice A zero-amount settlement, which would only burn the payer's nonce.
    error InvalidAmount();
    /// @notice The EIP-2612 permit's value is not the Permit2 permitted amount.
    error Permit2612AmountMismatch();
    /// @notice A settlement was entered again from within a settlement.
    error ReentrancyGuardReentrantCall();

    modifier nonReentrant() {
        if (_entered) revert ReentrancyGuardReentrantCall();
        _entered = true;
        _;
        _entered = false;
    }

    /// @dev Checks shared by both proxies, then the Permit2 witness transfer of `amount` to `to`.
    function _settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        address to,
        uint256 validAfter,
        bytes32 witnessHash,
        string memory witnessTypeString,
        bytes calldata signature
    ) internal {
        if (amount == 0) revert InvalidAmount();
        if (owner == address(0)) revert InvalidOwner();
        if (to == address(0)) revert InvalidDestination();
        // The upper bound of the window is Permit2's `deadline`.
        if (block.timestamp < validAfter) revert PaymentTooEarly();
        PERMIT2.permitWitnessTransferFrom(
            permit,
            ISignatureTransfer.SignatureTransferDetails({to: to, requestedAmount: amount}),
            owner,
            witnessHash,
            witnessTypeString,
            signature
        );
    }

    /// @dev Submits the payer's EIP-2612 approval of Permit2. A failing `permit` is ignored: it
    /// may have been submitted already (front-run, or an earlier settlement), and if the
    /// allowance is really missing the Permit2 transfer that follows reverts anyway.
    function _executePermit(address token, address owner, EIP2612Permit calldata permit2612, uint256 permittedAmount)
        internal
    {
        if (permit2612.value != permittedAmount) revert Permit2612AmountMismatch();
        try IERC20Permit(token).permit(
            owner, address(PERMIT2), permit2612.value, permit2612.deadline, permit2612.v, permit2612.r, permit2612.s
        ) {} catch {}
    }
}
