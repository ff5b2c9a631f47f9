// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {TestERC20Base} from "./TestERC20Base.sol";

/// @title TestUSDT
/// @notice A USDT-like test token: "Tether USD", 6 decimals, plain EIP-20, and deliberately
/// neither EIP-3009 nor EIP-2612, so x402 can only reach it through Permit2 (the payer's
/// one-time `approve(Permit2)`, or the `erc20ApprovalGasSponsoring` extension).
contract TestUSDT is TestERC20Base {
    function name() public pure override returns (string memory) {
        return "Tether USD";
    }

    function symbol() public pure override returns (string memory) {
        return "USDT";
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
