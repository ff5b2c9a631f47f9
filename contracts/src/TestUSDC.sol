// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title TestUSDC
/// @notice A USDC-compatible ERC-20 with EIP-3009 (transfer / receive with authorization) for
/// tests and local chains, written from EIP-20, EIP-712 and EIP-3009.
/// @dev x402's "exact" EVM scheme pays by having the payer sign an EIP-3009
/// `TransferWithAuthorization` that the facilitator submits. Clients and facilitators are built
/// against real USDC, so everything they can observe here matches Circle's FiatToken v2: the
/// EIP-712 domain ("USD Coin", version "2"), 6 decimals, the function overloads, the events and
/// the revert strings. What FiatToken has and tests do not need (proxy, pause, blacklist,
/// minter roles) is left out.
contract TestUSDC {
    string public constant name = "USD Coin";
    string public constant symbol = "USDC";
    uint8 public constant decimals = 6;

    /// @dev The EIP-712 version string. Kept in one place because both `version()` and the
    /// domain separator must agree with what signers put in their typed data.
    string private constant EIP712_VERSION = "2";

    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    /// @dev EIP-1271's magic value, `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`.
    bytes4 private constant ERC1271_MAGIC_VALUE = 0x1626ba7e;

    /// @dev Upper bound for `s` (half the secp256k1 group order). EIP-2 made the upper half
    /// invalid for transactions; rejecting it here too means every signature has exactly one
    /// accepted encoding, so a relayer cannot derive a second valid signature from a first.
    uint256 private constant SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice The deployer; the only account allowed to mint test funds.
    address public immutable owner;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    /// @dev EIP-3009 nonces are random 32-byte values rather than a counter, so a payer can have
    /// any number of authorizations outstanding at once; each is tracked individually.
    mapping(address => mapping(bytes32 => bool)) private _authorizationStates;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

    constructor() {
        owner = msg.sender;
    }

    /// @notice EIP-712 version of the signing domain: "2", like USDC v2, so wallets and SDKs
    /// that hard-code USDC's domain produce signatures this token accepts.
    function version() external pure returns (string memory) {
        return EIP712_VERSION;
    }

    /// @notice The EIP-712 domain separator.
    /// @dev Computed on every call instead of cached at deployment so that it is right on any
    /// chain, including after a fork changes `block.chainid` (a cached value would let a
    /// signature for one chain be replayed on the other).
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(
            abi.encode(
                DOMAIN_TYPEHASH,
                keccak256(bytes(name)),
                keccak256(bytes(EIP712_VERSION)),
                block.chainid,
                address(this)
            )
        );
    }

    /// @notice Creates `amount` new tokens for `to`. Owner-only so that test funds only appear
    /// where the test rig puts them.
    function mint(address to, uint256 amount) external {
        require(msg.sender == owner, "TestUSDC: caller is not the owner");
        require(to != address(0), "ERC20: mint to the zero address");
        totalSupply += amount;
        // Cannot overflow: no balance exceeds totalSupply, which the checked add above bounds.
        unchecked {
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    // ------------------------------------------------------------------------------------------
    // ERC-20
    // ------------------------------------------------------------------------------------------

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        require(spender != address(0), "ERC20: approve to the zero address");
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "ERC20: transfer amount exceeds allowance");
        // An allowance of type(uint256).max is treated as unlimited (a common ERC-20 extension)
        // so tests that approve "everything" once do not have to re-approve.
        if (allowed != type(uint256).max) {
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
        return true;
    }

    // ------------------------------------------------------------------------------------------
    // EIP-3009
    // ------------------------------------------------------------------------------------------

    /// @notice Whether `nonce` of `authorizer` was used or canceled (EIP-3009). Facilitators
    /// read this before settling to tell a replay from a fresh payment.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationStates[authorizer][nonce];
    }

    /// @notice Executes a transfer signed by `from` (EIP-3009), as `(v, r, s)`.
    /// @dev Anyone may submit it: the payer signs once and the facilitator pays the gas.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        // Packed as r ++ s ++ v, the 65-byte layout the `bytes` overload expects, so both
        // overloads share one code path (and contract wallets work through either).
        transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, abi.encodePacked(r, s, v));
    }

    /// @notice Executes a transfer signed by `from` (EIP-3009), with the signature as bytes.
    /// @dev This overload exists for contract wallets, whose EIP-1271 signatures need not be
    /// 65 bytes; for an EOA it takes the 65-byte r ++ s ++ v encoding.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) public {
        _requireValidAuthorization(from, nonce, validAfter, validBefore);
        bytes32 structHash = keccak256(
            abi.encode(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce)
        );
        require(_isValidSignatureNow(from, _hashTypedData(structHash), signature), "FiatTokenV2: invalid signature");
        _markAuthorizationAsUsed(from, nonce);
        _transfer(from, to, value);
    }

    /// @notice Receives a transfer signed by `from` (EIP-3009), as `(v, r, s)`; only `to` may
    /// submit it.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        receiveWithAuthorization(from, to, value, validAfter, validBefore, nonce, abi.encodePacked(r, s, v));
    }

    /// @notice Receives a transfer signed by `from` (EIP-3009), with the signature as bytes.
    /// @dev Only the payee may submit it. When a contract pulls a payment inside a larger
    /// operation, this stops a front-runner who saw the signature in the mempool from executing
    /// the transfer on its own, outside the context the payee intended.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) public {
        require(to == msg.sender, "FiatTokenV2: caller must be the payee");
        _requireValidAuthorization(from, nonce, validAfter, validBefore);
        bytes32 structHash = keccak256(
            abi.encode(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce)
        );
        require(_isValidSignatureNow(from, _hashTypedData(structHash), signature), "FiatTokenV2: invalid signature");
        _markAuthorizationAsUsed(from, nonce);
        _transfer(from, to, value);
    }

    /// @notice Cancels an unused authorization (EIP-3009), as `(v, r, s)`.
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external {
        cancelAuthorization(authorizer, nonce, abi.encodePacked(r, s, v));
    }

    /// @notice Cancels an unused authorization (EIP-3009), with the signature as bytes.
    /// @dev Lets a payer withdraw a signed payment before anyone submits it. The cancellation is
    /// itself signed, so a third party cannot cancel someone else's payments.
    function cancelAuthorization(address authorizer, bytes32 nonce, bytes memory signature) public {
        require(!_authorizationStates[authorizer][nonce], "FiatTokenV2: authorization is used or canceled");
        bytes32 structHash = keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce));
        require(
            _isValidSignatureNow(authorizer, _hashTypedData(structHash), signature), "FiatTokenV2: invalid signature"
        );
        _authorizationStates[authorizer][nonce] = true;
        emit AuthorizationCanceled(authorizer, nonce);
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    /// @dev Same checks, order and messages as FiatToken, so callers matching on revert reasons
    /// see the same thing as on USDC. The bounds are strict on both sides, as in EIP-3009:
    /// an authorization is valid only strictly after `validAfter` and strictly before
    /// `validBefore`.
    function _requireValidAuthorization(address authorizer, bytes32 nonce, uint256 validAfter, uint256 validBefore)
        private
        view
    {
        require(block.timestamp > validAfter, "FiatTokenV2: authorization is not yet valid");
        require(block.timestamp < validBefore, "FiatTokenV2: authorization is expired");
        require(!_authorizationStates[authorizer][nonce], "FiatTokenV2: authorization is used or canceled");
    }

    /// @dev Marked before the transfer runs, so even a re-entrant call cannot reuse the nonce.
    function _markAuthorizationAsUsed(address authorizer, bytes32 nonce) private {
        _authorizationStates[authorizer][nonce] = true;
        emit AuthorizationUsed(authorizer, nonce);
    }

    /// @dev EIP-712 digest: "\x19\x01" ++ domainSeparator ++ hashStruct(message).
    function _hashTypedData(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
    }

    function _transfer(address from, address to, uint256 value) private {
        require(from != address(0), "ERC20: transfer from the zero address");
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 balance = balanceOf[from];
        require(balance >= value, "ERC20: transfer amount exceeds balance");
        // Both safe: value <= balance was just checked, and the sum of all balances is
        // totalSupply, so the recipient's balance cannot overflow.
        unchecked {
            balanceOf[from] = balance - value;
            balanceOf[to] += value;
        }
        emit Transfer(from, to, value);
    }

    /// @dev Accounts with code are contract wallets and are asked via EIP-1271; accounts without
    /// code must have signed with their key. This is what lets smart wallets (and, after
    /// deployment, EIP-6492 counterfactual wallets) pay with the same `bytes` overload as EOAs.
    function _isValidSignatureNow(address signer, bytes32 digest, bytes memory signature) private view returns (bool) {
        if (signer.code.length > 0) {
            (bool ok, bytes memory ret) =
                signer.staticcall(abi.encodeWithSelector(ERC1271_MAGIC_VALUE, digest, signature));
            // Decoded as bytes32, not bytes4: the ABI decoder reverts on a bytes4 word with
            // dirty low bytes, and a misbehaving wallet must make the signature invalid, not
            // make this call revert with an unrelated error.
            return ok && ret.length >= 32 && abi.decode(ret, (bytes32)) == bytes32(ERC1271_MAGIC_VALUE);
        }
        address recovered = _recover(digest, signature);
        // ecrecover returns address(0) for garbage input; without this check a signature of
        // garbage would authorize transfers from the zero address.
        return recovered != address(0) && recovered == signer;
    }

    /// @dev Recovers the signer of a 65-byte r ++ s ++ v signature, or address(0) if it is not
    /// well formed (wrong length, high s, or v not 27/28).
    function _recover(bytes32 digest, bytes memory signature) private pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (uint256(s) > SECP256K1_HALF_N) return address(0);
        if (v != 27 && v != 28) return address(0);
        return ecrecover(digest, v, r, s);
    }
}
